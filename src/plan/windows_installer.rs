//! Windows Installer's exit codes: the product facts behind `accept_exit_codes`, one table shared
//! by the executor (what an installer's exit means) and the lab's msiexec stand-in (what it
//! answers). Values, names and meanings are Microsoft's "MsiExec.exe and InstMsi.exe error
//! messages" (learn.microsoft.com/windows/win32/msi/error-codes). Facts only: nothing runs here.

/// ERROR_SUCCESS: "The action completed successfully."
pub const SUCCESS: i32 = 0;
/// ERROR_INSTALL_FAILURE: "A fatal error occurred during installation."
pub const FATAL: i32 = 1603;
/// ERROR_UNKNOWN_PRODUCT: "This action is only valid for products that are currently installed."
/// For an uninstall, the product is already gone.
pub const UNKNOWN_PRODUCT: i32 = 1605;
/// ERROR_INSTALL_ALREADY_RUNNING: another installation is already in progress; retry later.
pub const ANOTHER_INSTALL: i32 = 1618;
/// ERROR_INSTALL_PACKAGE_OPEN_FAILED: the installation package could not be opened.
pub const PACKAGE_UNREADABLE: i32 = 1619;
/// ERROR_PRODUCT_VERSION: "Another version of this product is already installed."
pub const ANOTHER_VERSION: i32 = 1638;
/// ERROR_INVALID_COMMAND_LINE: "Invalid command line argument."
pub const INVALID_COMMAND_LINE: i32 = 1639;
/// ERROR_SUCCESS_REBOOT_INITIATED: the installer has started a restart; a success.
pub const REBOOT_INITIATED: i32 = 1641;
/// ERROR_SUCCESS_REBOOT_REQUIRED: a restart is required to complete the install; a success.
pub const REBOOT_REQUIRED: i32 = 3010;

/// Every code above with what it means, in words for a summary.
pub const KNOWN: [(i32, &str); 9] = [
    (SUCCESS, "success"),
    (FATAL, "fatal error during installation"),
    (UNKNOWN_PRODUCT, "the product is not installed"),
    (ANOTHER_INSTALL, "another installation is in progress"),
    (
        PACKAGE_UNREADABLE,
        "the installation package could not be opened",
    ),
    (
        ANOTHER_VERSION,
        "another version of this product is already installed",
    ),
    (INVALID_COMMAND_LINE, "invalid command line argument"),
    (REBOOT_INITIATED, "success; a restart was started"),
    (REBOOT_REQUIRED, "success; a restart is required"),
];

/// What `uninstall` accepts when the plan does not say (`accept_exit_codes`): the three successes
/// Microsoft lists, and 1605, a product no longer installed (a removal already done).
pub const UNINSTALL_ACCEPTS: [i32; 4] =
    [SUCCESS, UNKNOWN_PRODUCT, REBOOT_INITIATED, REBOOT_REQUIRED];

/// What `install` accepts when the plan does not say: the three successes Microsoft lists.
pub const INSTALL_ACCEPTS: [i32; 3] = [SUCCESS, REBOOT_INITIATED, REBOOT_REQUIRED];

/// What an exit code means, in words for the summary; `failure` for a code not in the table.
pub fn meaning(code: i32) -> &'static str {
    KNOWN
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("failure", |(_, words)| words)
}

/// Whether the code is a success that leaves a restart to be done (3010) or started (1641).
pub fn needs_reboot(code: i32) -> bool {
    code == REBOOT_REQUIRED || code == REBOOT_INITIATED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_table_says_what_each_code_means() {
        assert_eq!(meaning(1605), "the product is not installed");
        assert_eq!(meaning(1639), "invalid command line argument");
        assert_eq!(
            meaning(1638),
            "another version of this product is already installed"
        );
        assert_eq!(meaning(3010), "success; a restart is required");
        assert_eq!(meaning(12345), "failure");
        assert!(needs_reboot(1641) && needs_reboot(3010) && !needs_reboot(0));
    }

    #[test]
    fn the_default_accepted_codes_are_the_documented_successes_and_for_uninstall_1605() {
        assert_eq!(UNINSTALL_ACCEPTS, [0, 1605, 1641, 3010]);
        assert_eq!(INSTALL_ACCEPTS, [0, 1641, 3010]);
    }
}
