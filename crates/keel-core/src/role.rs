//! Roles of API keys. Each role includes the ones below it: admin ⊃ deployer ⊃ predictor ⊃ reader.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read models, metrics and reports.
    Reader,
    /// Also request predictions.
    Predictor,
    /// Also move aliases (deploy, promote, roll back).
    Deployer,
    /// Also manage keys.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Predictor => "predictor",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// Whether a key with this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "predictor" => Ok(Role::Predictor),
            "deployer" => Ok(Role::Deployer),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role '{s}' (use reader, predictor, deployer or admin)"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
