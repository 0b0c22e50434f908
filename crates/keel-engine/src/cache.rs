//! The model cache: references (`name`, `name@alias`, `name@7`) resolve to shared loaded versions. Each request
//! takes one `Arc` snapshot, so a response is always computed by exactly one version; when an alias moves, the
//! new version is loaded first and the entry is swapped in one step, so no request fails or mixes versions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use keel_store::{Selector, Store};

use crate::Result;
use crate::loaded::LoadedModel;
use crate::request::UnseenCategory;

/// Loaded models by reference, with the registry they come from.
pub struct ModelCache {
    store: Arc<Store>,
    unseen: UnseenCategory,
    /// Reference key (`name@sel`) → loaded version.
    entries: RwLock<HashMap<String, Arc<LoadedModel>>>,
    /// (name, version) → loaded version, so aliases that agree share one copy.
    versions: RwLock<HashMap<(String, i64), Arc<LoadedModel>>>,
    /// Monitoring window length in seconds, when monitoring is on.
    monitor_window: Option<i64>,
    /// Versions dropped from the cache whose monitoring counts have not been flushed yet.
    retired: std::sync::Mutex<Vec<Arc<LoadedModel>>>,
    /// Live rollouts by model name, loaded.
    rollouts: RwLock<HashMap<String, Arc<LiveRollout>>>,
}

/// What [`ModelCache::preload`] did: the references it loaded and those that failed, with the reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Preloaded {
    pub loaded: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// A rollout with its versions loaded: requests for `NAME@champion` go to the canary for a share of request
/// ids, and the shadow scores the same rows without answering.
#[derive(Clone)]
pub struct LiveRollout {
    pub rollout: keel_store::Rollout,
    pub canary: Option<Arc<LoadedModel>>,
    pub shadow: Option<Arc<LoadedModel>>,
}

/// A stable number in [0, 1) from a request id and a salt (FNV-1a, then MurmurHash3's finaliser), so the same
/// request id lands on the same side of a share on every replica, and different salts are independent.
pub fn unit_hash(salt: u64, id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Salt of the canary split (independent of the prediction-log sample, which uses 0).
pub const CANARY_SALT: u64 = 0x6361_6e61_7279;

fn key(name: &str, sel: &Selector) -> String {
    match sel {
        Selector::Latest => name.to_string(),
        Selector::Version(v) => format!("{name}@{v}"),
        Selector::Alias(a) => format!("{name}@{a}"),
    }
}

impl ModelCache {
    pub fn new(store: Arc<Store>, unseen: UnseenCategory) -> Self {
        ModelCache {
            store,
            unseen,
            entries: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
            monitor_window: None,
            retired: std::sync::Mutex::new(Vec::new()),
            rollouts: RwLock::new(HashMap::new()),
        }
    }

    /// Turns on monitoring: versions loaded from now on keep window profiles of `window_seconds`.
    pub fn with_monitoring(mut self, window_seconds: i64) -> Self {
        self.monitor_window = Some(window_seconds);
        self
    }

    /// Every loaded version that keeps a monitoring profile, and those retired since the last call (so their
    /// last counts can be flushed).
    pub fn monitored(&self) -> Vec<Arc<LoadedModel>> {
        let mut v: Vec<Arc<LoadedModel>> = self
            .versions
            .read()
            .expect("cache lock")
            .values()
            .filter(|m| m.monitor.is_some())
            .cloned()
            .collect();
        v.append(&mut self.retired.lock().expect("retired lock"));
        v
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The loaded version a reference points at, loading it on first use.
    pub async fn get(&self, reference: &str) -> Result<Arc<LoadedModel>> {
        if let Some(m) = self.entries.read().expect("cache lock").get(reference) {
            return Ok(m.clone());
        }
        let (name, sel) = Selector::parse(reference)?;
        let k = key(&name, &sel);
        if let Some(m) = self.entries.read().expect("cache lock").get(&k) {
            return Ok(m.clone());
        }
        let m = self.resolve(&name, &sel).await?;
        let mut entries = self.entries.write().expect("cache lock");
        entries.insert(k, m.clone());
        Ok(m)
    }

    /// Loads (or reuses) the version a selector currently points at.
    async fn resolve(&self, name: &str, sel: &Selector) -> Result<Arc<LoadedModel>> {
        let record = self.store.get(name, sel).await?;
        if !keel_ml::Model::is_tabular_kind(&record.kind) {
            return Err(crate::Error::NotTabular {
                model: record.model,
                version: record.version,
                kind: record.kind,
            });
        }
        let id = (record.model.clone(), record.version);
        if let Some(m) = self.versions.read().expect("cache lock").get(&id) {
            return Ok(m.clone());
        }
        let bytes = self.store.model_bytes(&record).await?;
        let unseen = self.unseen;
        let monitor = self.monitor_window.and_then(|w| {
            crate::monitor::Reference::of(&record).map(|r| crate::monitor::LiveProfile::new(r, w))
        });
        let mut loaded =
            tokio::task::spawn_blocking(move || LoadedModel::new(&record, &bytes, unseen))
                .await
                .map_err(|e| crate::Error::Invalid(format!("model load task failed: {e}")))??;
        loaded.monitor = monitor;
        // Two requests (or a request and the rollout loader) may load one version at once: the first one in
        // is kept and both get it, so every request records into the profile that is flushed.
        let m = self
            .versions
            .write()
            .expect("cache lock")
            .entry(id)
            .or_insert_with(|| Arc::new(loaded))
            .clone();
        Ok(m)
    }

    /// Re-resolves every cached alias and `latest` reference and swaps in versions that changed. Returns the
    /// references that moved.
    pub async fn refresh(&self) -> Result<Vec<(String, i64)>> {
        let keys: Vec<String> = self
            .entries
            .read()
            .expect("cache lock")
            .keys()
            .cloned()
            .collect();
        let mut moved = Vec::new();
        for k in keys {
            let (name, sel) = Selector::parse(&k)?;
            if matches!(sel, Selector::Version(_)) {
                continue;
            }
            let m = match self.resolve(&name, &sel).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(reference = %k, error = %e, "refresh failed; keeping the loaded version");
                    continue;
                }
            };
            let mut entries = self.entries.write().expect("cache lock");
            if entries.get(&k).is_none_or(|old| old.version != m.version) {
                moved.push((k.clone(), m.version));
                entries.insert(k, m);
            }
        }
        if let Err(e) = self.reload_rollouts().await {
            tracing::warn!(error = %e, "rollout refresh failed; keeping the loaded rollouts");
        }
        self.evict_unused();
        Ok(moved)
    }

    /// Re-reads live rollouts from the registry and loads their versions.
    pub async fn reload_rollouts(&self) -> Result<()> {
        let mut next = HashMap::new();
        for r in self.store.rollouts().await? {
            let load = |v: Option<i64>| {
                let name = r.model.clone();
                async move {
                    match v {
                        Some(v) => self.resolve(&name, &Selector::Version(v)).await.map(Some),
                        None => Ok(None),
                    }
                }
            };
            let canary = load(r.canary_version).await?;
            let shadow = load(r.shadow_version).await?;
            next.insert(
                r.model.clone(),
                Arc::new(LiveRollout {
                    rollout: r,
                    canary,
                    shadow,
                }),
            );
        }
        *self.rollouts.write().expect("cache lock") = next;
        Ok(())
    }

    /// The live rollout of a model, if one runs.
    pub fn rollout(&self, name: &str) -> Option<Arc<LiveRollout>> {
        self.rollouts.read().expect("cache lock").get(name).cloned()
    }

    /// The version that answers `reference` for request `request_id`, and the shadow that scores it too:
    /// `NAME@champion` (and the bare `NAME`, which means the same) goes to a running canary for its share of
    /// request ids.
    pub async fn route(
        &self,
        reference: &str,
        request_id: &str,
    ) -> Result<(Arc<LoadedModel>, Option<Arc<LoadedModel>>)> {
        let m = self.get(reference).await?;
        // `get` has validated the reference; only the champion (spelled out or bare) is rerouted. No parse on
        // this path: it runs on every request.
        let name = match reference.split_once('@') {
            None => reference,
            Some((n, keel_store::CHAMPION)) => n,
            Some(_) => return Ok((m, None)),
        };
        let Some(ro) = self.rollout(name) else {
            return Ok((m, None));
        };
        let answered = match &ro.canary {
            Some(c) if unit_hash(CANARY_SALT, request_id) < ro.rollout.canary_weight => c.clone(),
            _ => m,
        };
        let shadow = ro.shadow.clone().filter(|s| s.version != answered.version);
        Ok((answered, shadow))
    }

    /// Moves an alias in the registry (audited as done by `actor`) and swaps the cache entry at once.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        actor: &str,
    ) -> Result<Arc<LoadedModel>> {
        self.store.set_alias(name, alias, version, actor).await?;
        let sel = Selector::Alias(alias.to_string());
        let m = self.resolve(name, &sel).await?;
        self.entries
            .write()
            .expect("cache lock")
            .insert(key(name, &sel), m.clone());
        self.evict_unused();
        Ok(m)
    }

    /// Loads the champion of every registered tabular model; models without a champion are served only by
    /// explicit version, and models of other kinds (guard models) are never loaded here. One model's failure
    /// does not stop the others: it is returned with the reason.
    pub async fn preload(&self) -> Result<Preloaded> {
        let mut out = Preloaded::default();
        for m in self.store.list().await? {
            let Some(champion) = &m.champion else {
                continue;
            };
            if !keel_ml::Model::is_tabular_kind(&champion.kind) {
                continue;
            }
            let reference = format!("{}@{}", m.model, keel_store::CHAMPION);
            match self.get(&reference).await {
                Ok(_) => out.loaded.push(reference),
                Err(e) => out.failed.push((reference, e.to_string())),
            }
        }
        self.reload_rollouts().await?;
        Ok(out)
    }

    /// (reference, version) of every cached entry, sorted.
    pub fn loaded(&self) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = self
            .entries
            .read()
            .expect("cache lock")
            .iter()
            .map(|(k, m)| (k.clone(), m.version))
            .collect();
        v.sort();
        v
    }

    /// Drops versions no reference points at any more (requests in flight keep their own `Arc`).
    fn evict_unused(&self) {
        let mut live: std::collections::HashSet<(String, i64)> = self
            .entries
            .read()
            .expect("cache lock")
            .values()
            .map(|m| (m.name.clone(), m.version))
            .collect();
        for ro in self.rollouts.read().expect("cache lock").values() {
            for m in ro.canary.iter().chain(&ro.shadow) {
                live.insert((m.name.clone(), m.version));
            }
        }
        let mut retired = Vec::new();
        self.versions.write().expect("cache lock").retain(|id, m| {
            let keep = live.contains(id);
            if !keep && m.monitor.is_some() {
                retired.push(m.clone());
            }
            keep
        });
        self.retired.lock().expect("retired lock").extend(retired);
    }
}
