//! The lab's ".msi" package: a JSON description of the product an msiexec /i installs and of the
//! MSI properties that answer its questions. Lab-only format (TEST DOUBLE); a real .msi given to the
//! lab's msiexec is "a package that could not be opened" (1619), as for a damaged package.

use serde::{Deserialize, Serialize};

use crate::state::Product;

/// A lab package file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Always `1`; marks the file as a lab package.
    pub lab_package: u32,
    /// What the package installs.
    pub product: Product,
    /// The property naming the database to reuse (MIM 2016: `SQLDB`).
    pub database_property: String,
    /// The database when the property is absent.
    pub default_database: String,
    /// Properties naming the service account (MIM 2016: SERVICEACCOUNT, SERVICEDOMAIN, SERVICEPASSWORD).
    pub account_property: String,
    pub domain_property: String,
    pub password_property: String,
    /// The property giving a key file to import when the server has no key set. Lab choice
    /// (`KEYFILE`): no unattended key-import property of the real MIM MSI is documented here.
    pub key_file_property: String,
    /// Product codes this package replaces by a Windows Installer major upgrade: installed, they
    /// are removed as part of the install, keeping the key set, the service and the install folder.
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// The oldest version of an `upgrades` product the major upgrade accepts. MIM 2016:
    /// 4.1.3419.0 (FIM 2010 R2 SP1), which Microsoft documents as required for the in-place
    /// upgrade; how the real MSI reports an older FIM is not documented here, the lab fails 1603.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_min_version: Option<String>,
    /// How the package is told its store is on another server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_store: Option<RemoteStore>,
}

/// The properties that place the store: the server, and the property and value that say it is
/// another machine. MIM 2016: STORESERVER and `SQLServerStore=RemoteMachine` (documented by
/// Microsoft for a remote SQL store; without it the MSI looks for the store on this machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteStore {
    pub server_property: String,
    pub property: String,
    pub value: String,
}

/// MIM 2016 SP2 is 4.6.x: the lab's SP2 package has no major upgrade of FIM, so the documented
/// path for SP2 media (uninstall FIM, install MIM on the existing database with the exported keys)
/// is the one the lab lets through. That SP2's MSI carries no upgrade entry for FIM is a lab choice
/// following that documented path, not a fact read from the MSI's Upgrade table.
pub fn is_mim2016_sp2_or_later(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (4, 6)
}

impl Package {
    /// The MIM 2016 Synchronization Service package of the fim2010r2 lab, upgrading `upgrades`
    /// (none for SP2 media, see [`is_mim2016_sp2_or_later`]).
    pub fn mim2016(product: Product, upgrades: Vec<String>) -> Package {
        let upgrades = if is_mim2016_sp2_or_later(&product.version) {
            Vec::new()
        } else {
            upgrades
        };
        Package {
            lab_package: 1,
            product,
            database_property: "SQLDB".into(),
            default_database: "FIMSynchronizationService".into(),
            account_property: "SERVICEACCOUNT".into(),
            domain_property: "SERVICEDOMAIN".into(),
            password_property: "SERVICEPASSWORD".into(),
            key_file_property: "KEYFILE".into(),
            upgrades,
            upgrade_min_version: Some("4.1.3419.0".into()),
            remote_store: Some(RemoteStore {
                server_property: "STORESERVER".into(),
                property: "SQLServerStore".into(),
                value: "RemoteMachine".into(),
            }),
        }
    }

    /// Parses a package file's text; `None` when it is not a lab package.
    pub fn parse(text: &str) -> Option<Package> {
        serde_json::from_str::<Package>(text)
            .ok()
            .filter(|p| p.lab_package == 1)
    }
}
