//! One module per flow a client can run. Each takes parsed input and the
//! platform handles it needs, and returns a typed body or an `ApiError`.

pub mod health;
