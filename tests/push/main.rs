//! The push module through its public message interface, driven by a test host that
//! plays the sessions and an app server. Tests are named after the acceptance checklist
//! items of spec Part B (as amended by Part A's decisions).

mod harness;

mod enable;
mod hibernation;
mod persistence;
mod publish_format;
mod responses;
mod smacks;
mod triggers;
