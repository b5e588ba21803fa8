//! Native tests: to be written.
