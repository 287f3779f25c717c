//! On-call rotations. (Skeleton: being written.)

use serde::Deserialize;

/// A rotation as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    pub name: String,
}
