//! The seed data of the sync database: management agents, a connector space with a DN tree, links
//! and metaverse objects, generated deterministically from a small description. TEST DOUBLE data:
//! shaped like the engine's tables, not a copy of any real server's content.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::state::{CsRow, LinkRow, MaRow, MvRow, SyncData};

/// How a management agent's connector space is shaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaShape {
    /// A directory: a DN tree under `root` (e.g. `DC=contoso,DC=com`), containers, then leaf
    /// objects named `CN=<prefix> NNNN`; the first leaf is `CN=Administrator`.
    Directory {
        root: String,
        containers: Vec<String>,
        leaf_prefix: String,
    },
    /// A flat table source (an HR database): every object at the root, rdn `<prefix>NNNNN` and the
    /// same text as anchor.
    Flat { anchor_prefix: String },
}

/// One management agent and how many connector-space objects it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaFixture {
    pub name: String,
    pub shape: MaShape,
    pub objects: u32,
    /// Objects of this MA joined to the metaverse (the first N leaves).
    pub joined: u32,
}

/// The description the sync database is seeded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixture {
    /// `MicrosoftIdentityIntegrationServer` (IIFP/MIIS) or `FIMSynchronizationService` (FIM/MIM).
    pub sync_database: String,
    /// The SQL Server's machine name, as @@SERVERNAME and in backup headers.
    pub server_name: String,
    pub management_agents: Vec<MaFixture>,
    pub metaverse_objects: u32,
    /// FIM's connector-space columns: a directory's root components are placeholders
    /// (`object_type` NULL) and the last `obsoletions` leaves of each directory are obsoleted.
    #[serde(default)]
    pub fim_columns: bool,
    #[serde(default)]
    pub obsoletions: u32,
}

fn directory(root: &str, containers: &[&str], leaf_prefix: &str) -> MaShape {
    MaShape::Directory {
        root: root.to_string(),
        containers: containers.iter().map(|c| c.to_string()).collect(),
        leaf_prefix: leaf_prefix.to_string(),
    }
}

impl Fixture {
    /// An IIFP / MIIS 2003 server: three populated agents and one with an empty connector space.
    pub fn miis() -> Fixture {
        Fixture {
            sync_database: "MicrosoftIdentityIntegrationServer".into(),
            server_name: crate::layout::Flavour::Iifp.computer_name().into(),
            management_agents: vec![
                MaFixture {
                    name: "Contoso AD".into(),
                    shape: directory(
                        "DC=contoso,DC=com",
                        &["CN=Users", "OU=Staff", "OU=Groups", "OU=Service Accounts"],
                        "User",
                    ),
                    objects: 1800,
                    joined: 1200,
                },
                MaFixture {
                    name: "HR Database".into(),
                    shape: MaShape::Flat {
                        anchor_prefix: "E".into(),
                    },
                    objects: 1200,
                    joined: 1200,
                },
                MaFixture {
                    name: "Fabrikam GAL".into(),
                    shape: directory("O=Fabrikam", &["OU=GAL", "OU=Contacts"], "Contact"),
                    objects: 600,
                    joined: 300,
                },
                MaFixture {
                    name: "Legacy Notes".into(),
                    shape: MaShape::Flat {
                        anchor_prefix: "N".into(),
                    },
                    objects: 0,
                    joined: 0,
                },
            ],
            metaverse_objects: 1500,
            fim_columns: false,
            obsoletions: 0,
        }
    }

    /// A FIM 2010 Synchronization Service server: same data shape, the FIM database name.
    pub fn fim() -> Fixture {
        let mut f = Fixture::miis();
        f.sync_database = "FIMSynchronizationService".into();
        f.server_name = crate::layout::Flavour::Fim2010r2.computer_name().into();
        f.fim_columns = true;
        f.obsoletions = 3;
        f.management_agents[3] = MaFixture {
            name: "FIM Service MA".into(),
            shape: MaShape::Flat {
                anchor_prefix: "F".into(),
            },
            objects: 400,
            joined: 300,
        };
        f
    }

    /// Sets how many objects the first directory agent holds (`upgrade-lab init --objects N`), its
    /// joined objects capped at that. Root components and containers count among them.
    pub fn set_directory_objects(&mut self, objects: u32) {
        if let Some(ma) = self
            .management_agents
            .iter_mut()
            .find(|m| matches!(m.shape, MaShape::Directory { .. }))
        {
            ma.objects = objects;
            ma.joined = ma.joined.min(objects);
        }
    }

    /// Generates the rows. The same fixture always gives the same rows (ids are hashes).
    pub fn generate(&self) -> SyncData {
        let mut data = SyncData {
            fim_columns: self.fim_columns,
            ..SyncData::default()
        };
        let mv: Vec<String> = (0..self.metaverse_objects)
            .map(|i| guid(&format!("mv/{i}")))
            .collect();
        data.metaverse = mv
            .iter()
            .map(|id| MvRow {
                object_id: id.clone(),
            })
            .collect();
        for (m, ma) in self.management_agents.iter().enumerate() {
            let ma_id = guid(&format!("ma/{}", ma.name));
            data.management_agents.push(MaRow {
                ma_id: ma_id.clone(),
                ma_name: ma.name.clone(),
            });
            let fim = self.fim_columns;
            let mut push = |rdn: String, parent: Option<String>, key: &str| -> String {
                let object_id = guid(&format!("cs/{}/{key}", ma.name));
                // A directory's root components are only placeholders of the tree.
                let object_type = if fim && !key.starts_with("root") {
                    Some(
                        if key.contains('=') {
                            "container"
                        } else {
                            "person"
                        }
                        .to_string(),
                    )
                } else {
                    None
                };
                data.connector_space.push(CsRow {
                    object_id: object_id.clone(),
                    ma_id: ma_id.clone(),
                    rdn,
                    pobject_id: parent,
                    anchor: anchor(&ma.shape, key, &object_id),
                    object_type,
                    is_obsoletion: false,
                });
                object_id
            };
            let mut leaves = Vec::new();
            match &ma.shape {
                MaShape::Flat { anchor_prefix } => {
                    for i in 0..ma.objects {
                        leaves.push(push(
                            format!("{anchor_prefix}{:05}", i + 1),
                            None,
                            &i.to_string(),
                        ));
                    }
                }
                MaShape::Directory {
                    root,
                    containers,
                    leaf_prefix,
                } => {
                    if ma.objects == 0 {
                        continue;
                    }
                    // Root components: `DC=contoso,DC=com` becomes DC=com <- DC=contoso.
                    let mut parent: Option<String> = None;
                    let parts: Vec<&str> = root.split(',').collect();
                    for (depth, part) in parts.iter().rev().enumerate() {
                        parent = Some(push(part.to_string(), parent, &format!("root{depth}")));
                    }
                    let conts: Vec<String> = containers
                        .iter()
                        .map(|c| push(c.clone(), parent.clone(), c))
                        .collect();
                    let fixed = parts.len() + conts.len();
                    let leaf_count = (ma.objects as usize).saturating_sub(fixed);
                    for i in 0..leaf_count {
                        let rdn = if i == 0 {
                            "CN=Administrator".to_string()
                        } else {
                            format!("CN={leaf_prefix} {i:04}")
                        };
                        let container = conts
                            .get(i % conts.len().max(1))
                            .cloned()
                            .or(parent.clone());
                        leaves.push(push(rdn, container, &format!("leaf{i}")));
                    }
                    if self.fim_columns {
                        let n = data.connector_space.len();
                        let from = n.saturating_sub(self.obsoletions as usize);
                        for row in &mut data.connector_space[from..] {
                            row.is_obsoletion = true;
                        }
                    }
                }
            }
            for (i, cs) in leaves.iter().take(ma.joined as usize).enumerate() {
                if mv.is_empty() {
                    break;
                }
                // Spread agents over the metaverse so that objects join across agents.
                let target = (i + m * 7) % mv.len();
                data.csmv_links.push(LinkRow {
                    cs_object_id: cs.clone(),
                    mv_object_id: mv[target].clone(),
                });
            }
        }
        data
    }
}

/// An object's anchor. MIIS and FIM store anchors as binary (DESIGN.md: "anchors are binary").
/// A directory object's anchor is its objectGUID, 16 bytes (here the bytes of its lab GUID); how
/// the engine encodes a text anchor such as an employee id is not documented to this project, so
/// the lab stores it as UTF-16LE, Windows' string encoding (the lab's choice, not a product fact).
fn anchor(shape: &MaShape, key: &str, object_id: &str) -> Vec<u8> {
    match shape {
        MaShape::Directory { .. } => {
            let digits: String = object_id.chars().filter(char::is_ascii_hexdigit).collect();
            // `guid` makes 32 hex digits, so this cannot fail; an empty anchor would only make
            // searches find nothing.
            hex::decode(digits).unwrap_or_default()
        }
        MaShape::Flat { anchor_prefix } => {
            let n: u32 = key.parse().unwrap_or(0);
            format!("{anchor_prefix}{:05}", n + 1)
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect()
        }
    }
}

/// A braced upper-case GUID derived from `key` (nvarchar(38) like the engine's ids).
pub fn guid(key: &str) -> String {
    let h = Sha256::digest(key.as_bytes());
    let x = hex::encode_upper(&h[..16]);
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_fixture_gives_the_same_rows() {
        assert_eq!(Fixture::miis().generate(), Fixture::miis().generate());
    }

    #[test]
    fn anchors_are_binary_a_directory_object_s_is_its_16_byte_guid() {
        let data = Fixture::miis().generate();
        let admin = data.object("CN=Administrator").unwrap();
        assert_eq!(admin.anchor.len(), 16);
        let digits = admin.object_id.replace(['{', '}', '-'], "");
        assert_eq!(hex::encode_upper(&admin.anchor), digits);
        let hr = data.object("E00001").unwrap();
        assert_eq!(&hr.anchor[..4], &[b'E', 0, b'0', 0]);
    }

    #[test]
    fn the_size_knob_sets_the_directory_agents_objects_and_leaves_the_others() {
        let mut f = Fixture::miis();
        f.set_directory_objects(5000);
        let data = f.generate();
        let count = |name: &str| {
            let ma = data
                .management_agents
                .iter()
                .find(|m| m.ma_name == name)
                .unwrap();
            data.connector_space
                .iter()
                .filter(|r| r.ma_id == ma.ma_id)
                .count()
        };
        assert_eq!((count("Contoso AD"), count("HR Database")), (5000, 1200));
    }

    #[test]
    fn a_directory_agent_has_a_tree_with_administrator_under_a_container() {
        let data = Fixture::miis().generate();
        let admin = data.object("CN=Administrator").unwrap();
        let parent = data
            .connector_space
            .iter()
            .find(|r| Some(&r.object_id) == admin.pobject_id.as_ref())
            .unwrap();
        assert_eq!(parent.rdn, "CN=Users");
        let ma = data
            .management_agents
            .iter()
            .find(|m| m.ma_id == admin.ma_id)
            .unwrap();
        assert_eq!(ma.ma_name, "Contoso AD");
        let contoso = data
            .connector_space
            .iter()
            .filter(|r| r.ma_id == ma.ma_id)
            .count();
        assert_eq!(contoso, 1800);
    }
}
