//! The admin's commands beyond accounts: `cloud-notify push …` and `cloud-notify
//! status`. Like the `user` commands they reach a running server through its admin
//! socket and otherwise open the database file themselves; `push test` and `status` need
//! the running server.
//!
//! Everything that came from a peer (nodes, resources, an app server's error text) is
//! printed escaped: a control character in it cannot rewrite the admin's terminal.
//!
//! Unix only, like the admin socket.

mod database;
mod format;
mod outcome;
mod push;
mod server;
mod status;
mod user;

pub use outcome::NOT_RUNNING;
pub use push::{PushCommand, push};
pub use status::status;
pub use user::user_of;
