//! Guard models in the registry: resolving a reference to a registered guard version and loading it.

use keel_guard::GuardModel;
use keel_store::{Selector, Store, VersionRecord};

/// The registry kind of guard models.
pub const GUARD_KIND: &str = "guard";

/// Why the guard model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no guard model '{0}' in the registry; train one with `keel guard train`")]
    Missing(String),
    #[error("'{reference}' is a {kind} model, not a guard model")]
    WrongKind { reference: String, kind: String },
    #[error(transparent)]
    Store(#[from] keel_store::Error),
    #[error(transparent)]
    Guard(#[from] keel_guard::Error),
}

impl LoadError {
    pub fn class(&self) -> keel_core::ErrorClass {
        match self {
            LoadError::Store(e) => e.class(),
            LoadError::Guard(e) => e.class(),
            _ => keel_core::ErrorClass::Input,
        }
    }
}

/// The registered version a guard reference names (`guard`, `guard@champion`, `guard@3`), checked to be a
/// guard model.
pub async fn resolve(store: &Store, reference: &str) -> Result<VersionRecord, LoadError> {
    let (name, sel) = Selector::parse(reference)?;
    let v = match store.get(&name, &sel).await {
        Ok(v) => v,
        Err(keel_store::Error::UnknownModel(_) | keel_store::Error::UnknownVersion { .. }) => {
            return Err(LoadError::Missing(reference.into()));
        }
        Err(e) => return Err(e.into()),
    };
    if v.kind != GUARD_KIND {
        return Err(LoadError::WrongKind {
            reference: reference.into(),
            kind: v.kind,
        });
    }
    Ok(v)
}

/// Loads a guard model from the registry by reference.
pub async fn load_model(store: &Store, reference: &str) -> Result<GuardModel, LoadError> {
    let v = resolve(store, reference).await?;
    let bytes = store.model_bytes(&v).await?;
    Ok(GuardModel::from_bytes(&bytes)?)
}
