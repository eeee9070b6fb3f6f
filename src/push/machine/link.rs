//! The link of a session to a registration, and the hibernation the module holds for a
//! linked session (D14). Data only, so the machine's state can hold them without
//! importing what the machine does with them.

use std::time::Duration;

use super::marks::Marks;
use super::window::Window;

pub(super) struct Hibernation {
    pub normal_timeout: Duration,
    /// An important publish happened in this hibernation and the timer was cut back.
    pub cut_back: bool,
}

#[derive(Default)]
pub(super) struct Link {
    /// The registration this session enabled last; `None` after a disable or removal.
    pub identifier: Option<String>,
    pub hibernation: Option<Hibernation>,
    /// D20: the leading-edge window of the §8.5 and §8.6 paths.
    pub window: Window,
    pub marks: Marks,
}
