//! One rule for the crate's mutexes: every critical section leaves its state whole
//! (each rebuilds, swaps or pushes in one step), so a panic elsewhere while a lock
//! was held poisons nothing worth refusing.

use std::sync::{Mutex, MutexGuard};

/// [`Mutex::lock`], through poisoning.
pub(crate) trait Locked<T> {
    /// The guard, whether or not a holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}
