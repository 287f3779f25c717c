//! Routes and Alertmanager-style label matchers. (Skeleton.)

use std::str::FromStr;

/// One label matcher: `name=value`, `name!=value`, `name=~regex`, `name!~regex`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
}

impl FromStr for Matcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Matcher { name: s.to_owned() })
    }
}
