// The demo page script is being written.
