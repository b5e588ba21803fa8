//! Platform glue: the only code that talks to the Workers runtime (vars and
//! secrets, D1, the Durable Object, the delivery and webhook queues, outbound fetch). The rules it serves live
//! in `domain` and `config`, which do not import `worker`.

pub mod assets;
pub mod consumer;
pub mod d1;
pub mod delivery;
pub mod env;
pub mod limiter;
pub mod queue;
pub mod runtime;
