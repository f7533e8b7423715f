//! `live`: what Flight readers see. [`ring`] retains the decoded batches per topic, bounded by
//! bytes and age, without copying them; the Flight service (next) serves them.

pub mod flight;
pub mod ring;
