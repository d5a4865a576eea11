//! The sandbox layout of a lab server: drives as folders (C:\X maps to DIR/drives/C/X), the old
//! product installed with its Extensions, the new product's installer media on E:, the tool
//! wrappers, the key set and the service. `init` lays it out; it must not start anything.
//! TEST DOUBLE: product codes, versions and media below are the lab's own, not Microsoft's.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::faults::{self, Faults};
use crate::sqlmodel::{Fixture, Model};
use crate::state::{self, Account, Database, KeySet, LabState, Product, Service, SqlLogin};
use crate::LabError;

/// Which server the lab simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// IIFP installed, MIIS 2003 setup on E:, database MicrosoftIdentityIntegrationServer.
    Iifp,
    /// FIM 2010 R2 sync installed, a MIM 2016 sync lab .msi on E:, database FIMSynchronizationService.
    Fim2010r2,
}

impl Flavour {
    pub fn parse(raw: &str) -> Result<Flavour, LabError> {
        match raw.to_ascii_lowercase().as_str() {
            "iifp" => Ok(Flavour::Iifp),
            "fim2010r2" => Ok(Flavour::Fim2010r2),
            _ => Err(LabError::Usage(format!(
                "unknown product flavour `{raw}`; expected iifp or fim2010r2"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Iifp => "iifp",
            Flavour::Fim2010r2 => "fim2010r2",
        }
    }

    /// The sync database.
    pub fn database(self) -> &'static str {
        match self {
            Flavour::Iifp => "MicrosoftIdentityIntegrationServer",
            Flavour::Fim2010r2 => "FIMSynchronizationService",
        }
    }

    /// The server's computer name (also @@SERVERNAME of its SQL Server).
    pub fn computer_name(self) -> &'static str {
        match self {
            Flavour::Iifp => "MIISLAB",
            Flavour::Fim2010r2 => "FIMLAB",
        }
    }

    /// The sync service name.
    pub fn service(self) -> &'static str {
        match self {
            Flavour::Iifp => "miiserver",
            Flavour::Fim2010r2 => "FIMSynchronizationService",
        }
    }

    fn service_display_name(self) -> &'static str {
        match self {
            Flavour::Iifp => "Microsoft Identity Integration Server",
            Flavour::Fim2010r2 => "Forefront Identity Manager Synchronization Service",
        }
    }

    /// The product installed at `init`.
    pub fn installed_product(self) -> Product {
        match self {
            Flavour::Iifp => Product {
                code: "{6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}".into(),
                name: "Identity Integration Feature Pack".into(),
                version: "3.0.0.0".into(),
                publisher: "Microsoft Corporation".into(),
                install_location: MIIS_LOCATION.into(),
                wow6432: false,
                service: self.service().into(),
            },
            Flavour::Fim2010r2 => Product {
                code: "{3F1B7C22-8D4E-4A6B-B1C9-7E2D5F6A8B03}".into(),
                name: "Forefront Identity Manager 2010 R2 Synchronization Service".into(),
                // FIM 2010 R2 SP1, the oldest version Microsoft documents for the in-place upgrade
                // to MIM 2016 (`InitOptions::installed_version` sets another).
                version: "4.1.3419.0".into(),
                publisher: "Microsoft Corporation".into(),
                install_location: FIM_LOCATION.into(),
                wow6432: false,
                service: self.service().into(),
            },
        }
    }

    /// The product the installer media on E: installs.
    pub fn new_product(self) -> Product {
        match self {
            Flavour::Iifp => Product {
                code: "{9D4E1A37-2C6F-4B8D-A5E3-1F7C9B2D6E84}".into(),
                name: "Microsoft Identity Integration Server 2003".into(),
                version: "3.3.0.0".into(),
                publisher: "Microsoft Corporation".into(),
                install_location: MIIS_LOCATION.into(),
                wow6432: false,
                service: self.service().into(),
            },
            Flavour::Fim2010r2 => Product {
                code: "{B2E6D4F8-1A3C-4E5B-9D7F-2C8A6E4B1D95}".into(),
                name: "Microsoft Identity Manager Synchronization Service".into(),
                version: "4.4.1237.0".into(),
                publisher: "Microsoft Corporation".into(),
                install_location: FIM_LOCATION.into(),
                wow6432: false,
                service: self.service().into(),
            },
        }
    }

    /// The Windows the flavour's server runs, as far as the stand-ins show it.
    /// IIFP: Windows Server 2003 as released, with reg.exe 3.0 (project design notes) and Windows
    /// Installer 2.0.3790.0 ("Released with Windows Server 2003", Microsoft's "Released Versions of
    /// Windows Installer"). FIM 2010 R2: Windows Server 2008 R2, with a later reg.exe and Windows
    /// Installer 5.0.7600.16385 (same table).
    pub fn windows(self) -> Windows {
        match self {
            Flavour::Iifp => Windows {
                version: (5, 2, 3790),
                reg: RegVersion::V3_0,
                installer: [2, 0, 3790, 0],
            },
            Flavour::Fim2010r2 => Windows {
                version: (6, 1, 7601),
                reg: RegVersion::Later,
                installer: [5, 0, 7600, 16385],
            },
        }
    }

    /// The architecture the flavour's server has unless `InitOptions::arch` says otherwise:
    /// IIFP's Windows Server 2003 ran as 32-bit x86 or x64, the seed's is x86; the FIM 2010 R2 /
    /// MIM 2016 Synchronization Service runs only on 64-bit Windows Server.
    pub fn default_arch(self) -> Arch {
        match self {
            Flavour::Iifp => Arch::X86,
            Flavour::Fim2010r2 => Arch::X64,
        }
    }

    /// Windows path of the installer media on E:.
    pub fn media(self) -> &'static str {
        match self {
            Flavour::Iifp => MIIS_SETUP,
            Flavour::Fim2010r2 => MIM_MSI,
        }
    }
}

/// The processor architecture of the server's Windows. Only 64-bit Windows has WOW64, the layer
/// that runs 32-bit programs, and with it the registry's `SOFTWARE\WOW6432Node`, where 32-bit
/// programs' keys go (Microsoft, "Registry Redirector" and "32-bit and 64-bit Application Data in
/// the Registry"): on 32-bit Windows that key does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86,
    X64,
}

impl Arch {
    pub fn parse(raw: &str) -> Result<Arch, LabError> {
        match raw.to_ascii_lowercase().as_str() {
            "x86" => Ok(Arch::X86),
            "x64" => Ok(Arch::X64),
            _ => Err(LabError::Usage(format!(
                "unknown architecture `{raw}`; expected x86 or x64"
            ))),
        }
    }

    /// Whether the registry has `HKLM\SOFTWARE\WOW6432Node` (64-bit Windows only).
    pub fn has_wow6432node(self) -> bool {
        self == Arch::X64
    }
}

/// Which reg.exe the lab's `reg` stand-in behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegVersion {
    /// reg.exe 3.0 (Windows XP / Server 2003): a `! REG.EXE VERSION 3.0` header, `<NO NAME>` for
    /// default values, tabs around the type, CRLF line ends, no `/reg:32` or `/reg:64`.
    V3_0,
    /// Later reg.exe: four spaces around the type, `/reg:32` and `/reg:64`.
    Later,
}

/// What the stand-ins show of the server's Windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Major, minor, build (NTLM's VERSION field).
    pub version: (u8, u8, u16),
    pub reg: RegVersion,
    /// The Windows Installer version (the file version of System32\msi.dll).
    pub installer: [u16; 4],
}

pub const MIIS_LOCATION: &str = r"C:\Program Files\Microsoft Identity Integration Server\";
pub const FIM_LOCATION: &str =
    r"C:\Program Files\Microsoft Forefront Identity Manager\2010\Synchronization Service\";
/// The server's Windows folder (`%SystemRoot%`) unless `InitOptions::system_root` says otherwise.
pub const DEFAULT_SYSTEM_ROOT: &str = r"C:\Windows";
/// The lab's Windows Installer mutex (Microsoft, "_MSIExecute Mutex": set only while an installer
/// processes its execute sequence): the lab's installers hold an exclusive lock on DIR/[`INSTALLER_LOCK`]
/// through their execute phase, and a file of this name beside each msiexec stand-in (DIR/bin,
/// the server's System32) is a link to it, where `upgrade` on Linux looks (lab/README.md).
pub const MSIEXECUTE: &str = "_MSIExecute";
/// The file the lab's installers lock while in their execute phase.
pub const INSTALLER_LOCK: &str = "installer.lock";
/// The MIIS 2003 setup stand-in's wrapper.
pub const MIIS_SETUP: &str = r"E:\MIIS2003\Setup.exe";
/// The MIM 2016 sync lab package.
pub const MIM_MSI: &str = r"E:\Synchronization Service\Synchronization Service.msi";
/// The folder for backups and key files that `init` prepares.
pub const UPGRADE_FOLDER: &str = r"D:\Upgrade";
/// The setup stand-in reads the product it installs from here.
pub const MIIS_SETUP_PRODUCT: &str = r"E:\MIIS2003\setup.json";

/// Rules extension DLLs placed in Extensions\ (lab-made bytes, not real assemblies).
const EXTENSION_DLLS: [&str; 3] = [
    "Contoso.AD.MAExtension.dll",
    "Contoso.HR.MAExtension.dll",
    "Contoso.MVExtension.dll",
];

/// Maps a Windows drive path (`C:\X\Y`, `c:/X/Y`) into the sandbox (`DIR/drives/C/X/Y`).
/// `None` for anything that is not a drive-letter path.
pub fn win_to_lab(lab: &Path, win: &str) -> Option<PathBuf> {
    let b = win.as_bytes();
    if b.len() < 2
        || !b[0].is_ascii_alphabetic()
        || b[1] != b':'
        || (b.len() > 2 && b[2] != b'\\' && b[2] != b'/')
    {
        return None;
    }
    // Z: is Wine's drive for the Linux root: a Windows build of `upgrade` run under Wine names
    // the lab's files that way.
    let mut p = if b[0].eq_ignore_ascii_case(&b'Z') {
        PathBuf::from("/")
    } else {
        lab.join("drives")
            .join((b[0] as char).to_ascii_uppercase().to_string())
    };
    for part in win[2..].split(['\\', '/']).filter(|s| !s.is_empty()) {
        p.push(part);
    }
    Some(p)
}

/// A path as a stand-in receives it: a Windows drive path is mapped into the sandbox, anything
/// else (a POSIX path from a lab-native plan) is used as is.
pub fn resolve(lab: &Path, given: &str) -> PathBuf {
    win_to_lab(lab, given).unwrap_or_else(|| PathBuf::from(given))
}

/// The stand-in tools' wrapper paths in a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolPaths {
    pub miiskmu: PathBuf,
    pub msiexec: PathBuf,
    pub reg: PathBuf,
    pub sc: PathBuf,
    /// The new product's installer media (setup wrapper or lab .msi).
    pub installer: PathBuf,
}

/// Options for `init` beyond the flavour; rehearse uses them to match a plan's names.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub flavour: Flavour,
    /// Service account domain and user (default `LAB\svc-sync`).
    pub account: Option<(String, String)>,
    /// Overrides for the installed product's code and display name.
    pub installed_code: Option<String>,
    pub installed_name: Option<String>,
    /// Override for the installed product's version (`DisplayVersion`), e.g. `4.1.2273.0` for a
    /// FIM 2010 R2 without its service pack.
    pub installed_version: Option<String>,
    /// Overrides for the product the media installs.
    pub new_code: Option<String>,
    pub new_name: Option<String>,
    pub new_version: Option<String>,
    /// The upgrade-lab executable the wrappers run; default: this executable if it is
    /// upgrade-lab, else `crate::try_lab_binary()`.
    pub exe: Option<PathBuf>,
    /// How many connector-space objects the directory agent (`Contoso AD` on IIFP, the same
    /// agent on FIM) holds: a size knob to measure searches at scale. Default: the fixture's own.
    pub objects: Option<u32>,
    /// The server's `%SystemRoot%` (default [`DEFAULT_SYSTEM_ROOT`]); `C:\WINNT` is a Windows
    /// Server 2003 upgraded in place from Windows 2000, which kept Windows 2000's folder.
    pub system_root: Option<String>,
    /// The server's architecture (default: the flavour's, [`Flavour::default_arch`]); FIM's
    /// server cannot be x86.
    pub arch: Option<Arch>,
}

impl InitOptions {
    pub fn new(flavour: Flavour) -> InitOptions {
        InitOptions {
            flavour,
            account: None,
            installed_code: None,
            installed_name: None,
            installed_version: None,
            new_code: None,
            new_name: None,
            new_version: None,
            exe: None,
            objects: None,
            system_root: None,
            arch: None,
        }
    }
}

/// A lab folder made by `init`.
#[derive(Debug, Clone)]
pub struct Lab {
    dir: PathBuf,
}

impl Lab {
    /// Lays out a fresh lab server in `dir` (created if missing; must not already be a lab).
    pub fn init(dir: &Path, flavour: Flavour) -> Result<Lab, LabError> {
        Lab::init_with(dir, &InitOptions::new(flavour))
    }

    /// `init` with overrides.
    pub fn init_with(dir: &Path, opts: &InitOptions) -> Result<Lab, LabError> {
        if opts.flavour.default_arch() == Arch::X64 && opts.arch == Some(Arch::X86) {
            return Err(LabError::Usage(format!(
                "a {} server cannot be x86: its Synchronization Service runs only on 64-bit Windows Server",
                opts.flavour.name()
            )));
        }
        fs::create_dir_all(dir).map_err(LabError::io(dir))?;
        let dir = dir.canonicalize().map_err(LabError::io(dir))?;
        if state::state_path(&dir).exists() {
            return Err(LabError::AlreadyALab(dir));
        }
        let exe = match &opts.exe {
            Some(e) => e.clone(),
            None => default_exe()?,
        };
        let lab = Lab { dir };
        lab.lay_out(opts, &exe)?;
        Ok(lab)
    }

    /// An existing lab folder.
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        let dir = dir.canonicalize().map_err(LabError::io(dir))?;
        state::load(&dir)?;
        Ok(Lab { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current lab.json.
    pub fn state(&self) -> Result<LabState, LabError> {
        Ok(state::load(&self.dir)?)
    }

    /// Maps a Windows drive path into this lab's sandbox (other paths are returned unchanged).
    pub fn lab_path(&self, win: &str) -> PathBuf {
        resolve(&self.dir, win)
    }

    /// Replaces the active faults (tool faults act at once; SQL faults when a server starts).
    pub fn set_faults<S: AsRef<str>>(&self, specs: &[S]) -> Result<Faults, LabError> {
        let f = Faults::from_specs(specs)?;
        faults::store(&self.dir, &f)?;
        Ok(f)
    }

    /// Where the stand-ins' wrappers are.
    pub fn tools(&self) -> Result<ToolPaths, LabError> {
        let st = self.state()?;
        let installed = st
            .products
            .first()
            .cloned()
            .unwrap_or_else(|| st.flavour.installed_product());
        Ok(ToolPaths {
            miiskmu: self
                .lab_path(&installed.install_location)
                .join("Bin")
                .join("miiskmu"),
            msiexec: self.dir.join("bin").join("msiexec"),
            reg: self.dir.join("bin").join("reg"),
            sc: self.dir.join("bin").join("sc"),
            installer: self.lab_path(st.flavour.media()),
        })
    }

    fn lay_out(&self, opts: &InitOptions, exe: &Path) -> Result<(), LabError> {
        let dir = &self.dir;
        let flavour = opts.flavour;
        let arch = opts.arch.unwrap_or(flavour.default_arch());
        for d in ["C", "D", "E"] {
            mkdir(&dir.join("drives").join(d))?;
        }
        // A prepared server: the administrator made a folder for the upgrade's files.
        mkdir(&resolve(dir, UPGRADE_FOLDER))?;
        mkdir(&dir.join("bin"))?;
        for tool in ["msiexec", "reg", "sc"] {
            write_wrapper(&dir.join("bin").join(tool), exe, dir, tool)?;
        }
        let lock = dir.join(INSTALLER_LOCK);
        fs::write(&lock, b"").map_err(LabError::io(&lock))?;
        link_mutex(dir, &dir.join("bin"))?;
        // msi.dll beside msiexec, as in System32: its file version is the Windows Installer's.
        let msi_dll = dir.join("bin").join("msi.dll");
        fs::write(&msi_dll, msi_dll_bytes(flavour.windows().installer))
            .map_err(LabError::io(&msi_dll))?;
        // The server's own System32 on its C: drive, as a remote host sees it over WinRM: the
        // tools under their Windows names, and msi.dll, whose version a remote plan reads there.
        let system_root = opts
            .system_root
            .clone()
            .unwrap_or_else(state::default_system_root);
        let system32 = resolve(dir, &format!(r"{system_root}\System32"));
        mkdir(&system32)?;
        for tool in ["msiexec", "reg", "sc", "icacls"] {
            write_wrapper(&system32.join(format!("{tool}.exe")), exe, dir, tool)?;
        }
        link_mutex(dir, &system32)?;
        let remote_msi_dll = system32.join("msi.dll");
        fs::write(&remote_msi_dll, msi_dll_bytes(flavour.windows().installer))
            .map_err(LabError::io(&remote_msi_dll))?;

        let mut installed = flavour.installed_product();
        if let Some(code) = &opts.installed_code {
            installed.code = code.to_ascii_uppercase();
        }
        if let Some(name) = &opts.installed_name {
            installed.name = name.clone();
        }
        if let Some(v) = &opts.installed_version {
            installed.version = v.clone();
        }
        install_files(dir, &installed, exe, true)?;

        let mut new = flavour.new_product();
        if let Some(code) = &opts.new_code {
            new.code = code.to_ascii_uppercase();
        }
        if let Some(name) = &opts.new_name {
            new.name = name.clone();
        }
        if let Some(v) = &opts.new_version {
            new.version = v.clone();
        }
        match flavour {
            Flavour::Iifp => {
                let setup = resolve(dir, MIIS_SETUP);
                mkdir(parent(&setup)?)?;
                write_wrapper(&setup, exe, dir, "setup")?;
                write_json(&resolve(dir, MIIS_SETUP_PRODUCT), &new)?;
            }
            Flavour::Fim2010r2 => {
                let msi = resolve(dir, MIM_MSI);
                mkdir(parent(&msi)?)?;
                write_json(
                    &msi,
                    &crate::tools::package::Package::mim2016(new, vec![installed.code.clone()]),
                )?;
            }
        }

        let key_set = KeySet {
            id: guid(&state::random_bytes(16).map_err(LabError::io(dir))?),
            secret_hex: hex::encode(state::random_bytes(32).map_err(LabError::io(dir))?),
        };
        let (domain, user) = opts
            .account
            .clone()
            .unwrap_or_else(|| ("LAB".to_string(), "svc-sync".to_string()));
        let st = LabState {
            flavour,
            products: vec![installed],
            databases: vec![Database {
                name: flavour.database().into(),
                key_set_id: key_set.id.clone(),
            }],
            key_set: Some(key_set),
            services: vec![Service {
                name: flavour.service().into(),
                display_name: flavour.service_display_name().into(),
                running: true,
            }],
            account: Account {
                domain,
                user,
                password: lab_password()?,
            },
            sql: SqlLogin {
                login: "upgrade".into(),
                password: lab_password()?,
            },
            exe: exe.to_path_buf(),
            installs: Vec::new(),
            key_exports: Vec::new(),
            winrm: Some(winrm_login()?),
            system_root,
            arch: Some(arch),
        };
        faults::store(dir, &Faults::default())?;
        seed_sql(dir, flavour, opts.objects)?;
        state::store(dir, &st)?;
        Ok(())
    }
}

/// Seeds the SQL model (DIR/sql/) with the flavour's sync database, its directory agent holding
/// `objects` connector-space objects when given.
fn seed_sql(dir: &Path, flavour: Flavour, objects: Option<u32>) -> Result<(), LabError> {
    let mut fixture = match flavour {
        Flavour::Iifp => Fixture::miis(),
        Flavour::Fim2010r2 => Fixture::fim(),
    };
    if let Some(n) = objects {
        fixture.set_directory_objects(n);
    }
    Model::seed(dir, &fixture)?;
    Ok(())
}

/// Lays down a product's install folder: Bin/miiskmu wrapper and Extensions/ (with the lab's
/// DLLs when `with_extensions`).
pub fn install_files(
    lab: &Path,
    product: &Product,
    exe: &Path,
    with_extensions: bool,
) -> Result<(), LabError> {
    let root = resolve(lab, &product.install_location);
    mkdir(&root.join("Bin"))?;
    mkdir(&root.join("Extensions"))?;
    write_wrapper(&root.join("Bin").join("miiskmu"), exe, lab, "miiskmu")?;
    // The name the product installs it under, which a remote host looks for over WinRM.
    write_wrapper(&root.join("Bin").join("miiskmu.exe"), exe, lab, "miiskmu")?;
    if with_extensions {
        for (i, name) in EXTENSION_DLLS.iter().enumerate() {
            let mut bytes =
                b"MZ\x90\x00upgrade-lab rules extension (not a real assembly)\n".to_vec();
            bytes.extend(std::iter::repeat_n(b'A' + i as u8, 512 * (i + 1)));
            let p = root.join("Extensions").join(name);
            fs::write(&p, bytes).map_err(LabError::io(&p))?;
        }
    }
    Ok(())
}

/// A stand-in for msi.dll: not a DLL, only a VS_VERSIONINFO resource block (the UTF-16 key
/// `VS_VERSION_INFO`, then VS_FIXEDFILEINFO with signature 0xFEEF04BD and the file version), which
/// is where Windows keeps a file's version. TEST DOUBLE.
pub fn msi_dll_bytes(version: [u16; 4]) -> Vec<u8> {
    let mut b = b"MZ upgrade-lab stand-in for msi.dll (not a real DLL)\n".to_vec();
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    // VS_VERSIONINFO: wLength, wValueLength (sizeof VS_FIXEDFILEINFO), wType (binary).
    b.extend([92u16, 52, 0].iter().flat_map(|w| w.to_le_bytes()));
    b.extend(
        "VS_VERSION_INFO\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes),
    );
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    let [a, c, d, e] = version.map(u32::from);
    let (ms, ls) = ((a << 16) | c, (d << 16) | e);
    // Signature, structure version, file version, product version, then flags, OS, type: zero.
    for dword in [
        0xFEEF_04BD,
        0x0001_0000,
        ms,
        ls,
        ms,
        ls,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ] {
        b.extend(u32::to_le_bytes(dword));
    }
    b
}

/// Puts the lab's `_MSIExecute` in `folder`: a link to DIR/installer.lock, which an installer of the
/// lab locks through its execute phase.
fn link_mutex(lab: &Path, folder: &Path) -> Result<(), LabError> {
    let link = folder.join(MSIEXECUTE);
    std::os::unix::fs::symlink(lab.join(INSTALLER_LOCK), &link).map_err(LabError::io(&link))
}

/// `#!/bin/sh` wrapper that runs `upgrade-lab tool --lab DIR NAME "$@"`.
pub fn write_wrapper(path: &Path, exe: &Path, lab: &Path, tool: &str) -> Result<(), LabError> {
    let text = format!(
        "#!/bin/sh\n# upgrade-lab stand-in ({tool}); TEST DOUBLE\nexec {} tool --lab {} {tool} \"$@\"\n",
        sh_quote(&exe.to_string_lossy()),
        sh_quote(&lab.to_string_lossy())
    );
    fs::write(path, text).map_err(LabError::io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(LabError::io(path))
}

/// The stand-in a file is the wrapper of (the `# upgrade-lab stand-in (NAME)` line that
/// `write_wrapper` writes), if it is one.
pub fn wrapper_tool(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("# upgrade-lab stand-in ("))?
        .split(')')
        .next()?;
    crate::tools::TOOLS
        .contains(&name)
        .then(|| name.to_string())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn mkdir(p: &Path) -> Result<(), LabError> {
    fs::create_dir_all(p).map_err(LabError::io(p))
}

fn parent(p: &Path) -> Result<&Path, LabError> {
    p.parent()
        .ok_or_else(|| LabError::Usage(format!("{} has no parent folder", p.display())))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| LabError::Usage(e.to_string()))?;
    fs::write(path, text).map_err(LabError::io(path))
}

/// A GUID-shaped id from 16 bytes, upper case, in braces.
pub fn guid(b: &[u8]) -> String {
    let h = hex::encode_upper(b);
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The local administrator the WinRM listener accepts, with a fresh password.
pub fn winrm_login() -> Result<state::WinrmLogin, LabError> {
    Ok(state::WinrmLogin {
        user: "Administrator".into(),
        password: lab_password()?,
    })
}

fn lab_password() -> Result<String, LabError> {
    let bytes = state::random_bytes(12).map_err(LabError::io(Path::new("/dev/urandom")))?;
    Ok(format!("Lab-{}", hex::encode(bytes)))
}

/// The executable the wrappers run when `InitOptions::exe` is not given.
fn default_exe() -> Result<PathBuf, LabError> {
    let me = std::env::current_exe().map_err(LabError::io(Path::new("current_exe")))?;
    if me.file_stem().is_some_and(|s| s == "upgrade-lab") {
        Ok(me)
    } else {
        crate::try_lab_binary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_drive_paths_map_into_the_drives_folder() {
        let lab = Path::new("/tmp/lab");
        assert_eq!(
            win_to_lab(
                lab,
                r"C:\Program Files\Microsoft Identity Integration Server\Extensions"
            ),
            Some(PathBuf::from(
                "/tmp/lab/drives/C/Program Files/Microsoft Identity Integration Server/Extensions"
            ))
        );
        assert_eq!(
            win_to_lab(lab, r"d:/Upgrade\miis.bak"),
            Some(PathBuf::from("/tmp/lab/drives/D/Upgrade/miis.bak"))
        );
        assert_eq!(
            win_to_lab(lab, "E:"),
            Some(PathBuf::from("/tmp/lab/drives/E"))
        );
        assert_eq!(win_to_lab(lab, "/tmp/x"), None);
        // Wine's Z: is the Linux root, for a Windows build of upgrade run under Wine.
        assert_eq!(
            win_to_lab(lab, r"Z:\tmp\x.bak"),
            Some(PathBuf::from("/tmp/x.bak"))
        );
        assert_eq!(win_to_lab(lab, r"\\server\share\x"), None);
        assert_eq!(resolve(lab, "/tmp/x"), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn guids_look_like_product_codes() {
        assert_eq!(guid(&[0xab; 16]), "{ABABABAB-ABAB-ABAB-ABAB-ABABABABABAB}");
    }
}
