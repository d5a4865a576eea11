//! `snapshot_connector_space`: the plan's record of connector-space counts before the upgrade.
//! Its spec, and what the plan language knows of it (`KindSpec`): the steps it names, the
//! secrets it holds, and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KindSpec, PathField, Problems, SecretField, Where};
use crate::graph::Reference;

/// Record connector-space object counts per management agent, and the metaverse total.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConnectorSpace {
    pub database: String,
}

impl KindSpec for SnapshotConnectorSpace {
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    fn secrets(&self) -> Vec<SecretField<'_>> {
        Vec::new()
    }
    fn paths(&self) -> Vec<PathField<'_>> {
        Vec::new()
    }
    fn validate(&self, _: &Where<'_>, _: &mut Problems) {}
}
