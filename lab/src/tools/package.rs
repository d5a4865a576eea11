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
}

impl Package {
    /// The MIM 2016 Synchronization Service package of the fim2010r2 lab, upgrading `upgrades`.
    pub fn mim2016(product: Product, upgrades: Vec<String>) -> Package {
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
        }
    }

    /// Parses a package file's text; `None` when it is not a lab package.
    pub fn parse(text: &str) -> Option<Package> {
        serde_json::from_str::<Package>(text)
            .ok()
            .filter(|p| p.lab_package == 1)
    }
}
