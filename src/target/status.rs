//! [`Status`]: the typed set of flags in a target's live word.

use std::fmt;
use std::ops::{BitAnd, BitOr, Not};

/// Why a target may not be picked right now, plus two flags that do not block: a set of bits
/// kept in the top byte of the target's live word (see `slots`), changed only through
/// `TargetState::transition`.
///
/// Code outside the core names flags (`Status::EJECTED`), never bit positions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Status(u8);

impl Status {
    /// No flag: available.
    pub(crate) const NONE: Status = Status(0);
    /// Admin: out of rotation.
    pub(crate) const DISABLED: Status = Status(1);
    /// Admin: no new requests; requests in flight finish.
    pub(crate) const DRAINING: Status = Status(1 << 1);
    /// Both admin flags.
    pub(crate) const ADMIN: Status = Status(1 | 1 << 1);
    /// Failed `fall` active checks in a row (cleared after `rise` passes).
    pub(crate) const UNHEALTHY: Status = Status(1 << 2);
    /// Ejected by passive outlier detection.
    pub(crate) const EJECTED: Status = Status(1 << 3);
    /// Waiting for its first passing active check.
    pub(crate) const PENDING: Status = Status(1 << 4);
    /// Not blocking: the effective weight is ramping up (slow start).
    pub(crate) const RAMP: Status = Status(1 << 5);
    /// Not blocking: the state belongs to its group's current membership.
    pub(crate) const MEMBER: Status = Status(1 << 6);
    /// The flags that keep a target from being picked.
    pub(crate) const BLOCKING: Status = Status(Self::ADMIN.0 | 1 << 2 | 1 << 3 | 1 << 4);
    /// The flags a pick still honours in panic mode (observed health is ignored there).
    pub(crate) const BLOCKING_IN_PANIC: Status = Status(Self::ADMIN.0 | 1 << 4);

    const NAMES: [(Status, &'static str); 7] = [
        (Status::DISABLED, "DISABLED"),
        (Status::DRAINING, "DRAINING"),
        (Status::UNHEALTHY, "UNHEALTHY"),
        (Status::EJECTED, "EJECTED"),
        (Status::PENDING, "PENDING"),
        (Status::RAMP, "RAMP"),
        (Status::MEMBER, "MEMBER"),
    ];

    /// The flags as the word's top byte holds them.
    #[inline(always)]
    pub(crate) const fn bits(self) -> u32 {
        self.0 as u32
    }

    /// The flags of a word's top byte (higher bits are ignored).
    #[inline(always)]
    pub(crate) const fn from_bits(bits: u32) -> Status {
        Status(bits as u8)
    }

    /// Whether any flag of `other` is set.
    #[inline(always)]
    pub(crate) const fn intersects(self, other: Status) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for Status {
    type Output = Status;
    #[inline(always)]
    fn bitor(self, rhs: Status) -> Status {
        Status(self.0 | rhs.0)
    }
}

impl BitAnd for Status {
    type Output = Status;
    #[inline(always)]
    fn bitand(self, rhs: Status) -> Status {
        Status(self.0 & rhs.0)
    }
}

impl Not for Status {
    type Output = Status;
    #[inline(always)]
    fn not(self) -> Status {
        Status(!self.0)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for (flag, name) in Status::NAMES {
            if self.intersects(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn flags_are_distinct_and_fit_the_top_byte() {
        let mut all = Status::NONE;
        for (flag, _) in Status::NAMES {
            assert!(!all.intersects(flag), "{flag:?} overlaps");
            all = all | flag;
        }
        assert!(all.bits() < 1 << 8);
        assert_eq!(Status::from_bits(all.bits()), all);
        assert!(Status::BLOCKING.intersects(Status::ADMIN | Status::PENDING));
        assert!(!Status::BLOCKING.intersects(Status::RAMP | Status::MEMBER));
        assert!(!Status::BLOCKING_IN_PANIC.intersects(Status::UNHEALTHY | Status::EJECTED));
        assert_eq!(
            format!("{:?}", Status::EJECTED | Status::MEMBER),
            "{EJECTED, MEMBER}"
        );
        assert_eq!(Status::RAMP & !Status::RAMP, Status::NONE);
    }
}
