//! Every SQL statement `upgrade` sends, in one place, so a reviewer (and the lab's TDS double) can
//! see the whole conversation. Builders quote identifiers and literals; they never run anything.
//! Read-only statements come first; the two that change state (BACKUP, and nothing else) are marked.

/// `[name]` with `]` doubled, for database names.
pub fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// `N'text'` with `'` doubled.
pub fn quote_literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// One row: the full version banner.
pub const VERSION: &str = "SELECT @@VERSION";

/// One row: the server's clock (`now`, datetime, the server's local time, as backup dates are).
pub const SERVER_TIME: &str = "SELECT GETDATE() AS now";

/// One row, three nvarchar columns: ProductVersion (e.g. `8.00.2039`), ProductLevel, Edition.
pub const SERVER_PROPERTIES: &str = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version, CAST(SERVERPROPERTY('ProductLevel') AS nvarchar(128)) AS product_level, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition";

/// One row (name) if the database exists. Works on SQL Server 2000 (no `sys.databases`).
pub fn database_exists(database: &str) -> String {
    format!(
        "SELECT name FROM master.dbo.sysdatabases WHERE name = {}",
        quote_literal(database)
    )
}

/// The newest full backup of `database` to the file `path`, from msdb's history.
/// Columns: backup_set_id (int), database_name, backup_start_date, backup_finish_date (datetime),
/// physical_device_name (nvarchar).
pub fn latest_backup_to(database: &str, path: &str) -> String {
    format!(
        "SELECT TOP 1 bs.backup_set_id, bs.database_name, bs.backup_start_date, bs.backup_finish_date, bmf.physical_device_name \
         FROM msdb.dbo.backupset bs JOIN msdb.dbo.backupmediafamily bmf ON bs.media_set_id = bmf.media_set_id \
         WHERE bs.database_name = {} AND bs.type = 'D' AND bmf.physical_device_name = {} \
         ORDER BY bs.backup_finish_date DESC",
        quote_literal(database),
        quote_literal(path)
    )
}

/// The backup sets in a file. Columns read by name: BackupName, BackupType (1 = full database),
/// DatabaseName, BackupStartDate, BackupFinishDate, Position.
pub fn restore_headeronly(path: &str) -> String {
    format!("RESTORE HEADERONLY FROM DISK = {}", quote_literal(path))
}

/// Checks the backup file is complete and readable; `checksum` only on SQL Server 2005 and later.
pub fn restore_verifyonly(path: &str, checksum: bool) -> String {
    let with = if checksum { " WITH CHECKSUM" } else { "" };
    format!(
        "RESTORE VERIFYONLY FROM DISK = {}{with}",
        quote_literal(path)
    )
}

/// CHANGES STATE: writes the backup file (overwriting it: `INIT`) and a row in msdb's history.
/// `checksum` only on SQL Server 2005 and later. `STATS = 10`: the server says "n percent
/// processed." (3211) every 10 percent as it goes (SQL Server 2000 Books Online, BACKUP:
/// `STATS [= percentage]`, 10 by default), which the step shows as its progress.
pub fn backup_database(database: &str, path: &str, name: &str, checksum: bool) -> String {
    let checksum = if checksum { ", CHECKSUM" } else { "" };
    format!(
        "BACKUP DATABASE {} TO DISK = {} WITH INIT{checksum}, NAME = {}, STATS = 10",
        quote_ident(database),
        quote_literal(path),
        quote_literal(name)
    )
}

/// Connector-space objects per management agent. Columns: ma_name (nvarchar), objects (int).
pub fn connector_space_counts(database: &str) -> String {
    let db = quote_ident(database);
    format!(
        "SELECT ma.ma_name, COUNT(*) AS objects FROM {db}.dbo.mms_connectorspace cs \
         JOIN {db}.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id GROUP BY ma.ma_name"
    )
}

/// The columns of the sync database's connector-space table (INFORMATION_SCHEMA exists from SQL
/// Server 7.0 on, so this also works on SQL Server 2000). Column: COLUMN_NAME.
pub fn connector_space_columns(database: &str) -> String {
    format!(
        "SELECT COLUMN_NAME FROM {}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = N'mms_connectorspace'",
        quote_ident(database)
    )
}

/// Where the table has FIM's columns: per management agent, the placeholders (`object_type IS
/// NULL`) and the obsoleted objects among the rest (`is_obsoletion = 1`), so that verify compares
/// like with like. Columns: ma_name, placeholders, obsoletions (int).
pub fn connector_space_breakdown(database: &str) -> String {
    let db = quote_ident(database);
    format!(
        "SELECT ma.ma_name, \
         SUM(CASE WHEN cs.object_type IS NULL THEN 1 ELSE 0 END) AS placeholders, \
         SUM(CASE WHEN cs.object_type IS NOT NULL AND cs.is_obsoletion = 1 THEN 1 ELSE 0 END) AS obsoletions \
         FROM {db}.dbo.mms_connectorspace cs \
         JOIN {db}.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id GROUP BY ma.ma_name"
    )
}

/// Management agents, including those with an empty connector space. Column: ma_name.
pub fn management_agents(database: &str) -> String {
    format!(
        "SELECT ma_name FROM {}.dbo.mms_management_agent",
        quote_ident(database)
    )
}

/// Metaverse objects in all. Column: objects (int).
pub fn metaverse_count(database: &str) -> String {
    format!(
        "SELECT COUNT(*) AS objects FROM {}.dbo.mms_metaverse",
        quote_ident(database)
    )
}

/// One management agent's connector-space objects, for DN, anchor and sub-tree searches: read as
/// a stream (`SqlClient::query_each`), never held whole. Columns: object_id, pobject_id (parent;
/// NULL at the root), rdn, anchor (binary). DNs are rebuilt from the parent chain by the caller
/// (SQL Server 2000 has no recursive CTE), with the parents from `connector_space_parents`.
pub fn connector_space_objects(database: &str, management_agent: &str) -> String {
    let db = quote_ident(database);
    format!(
        "SELECT cs.object_id, cs.pobject_id, cs.rdn, cs.anchor FROM {db}.dbo.mms_connectorspace cs \
         JOIN {db}.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id WHERE ma.ma_name = {}",
        quote_literal(management_agent)
    )
}

/// The objects of one management agent that are the parent of some connector-space object: the
/// containers of a directory, few beside its leaves, so a search can hold them while the rest
/// streams past. Columns: object_id, pobject_id, rdn. `IN (subquery)` works on SQL Server 2000.
pub fn connector_space_parents(database: &str, management_agent: &str) -> String {
    let db = quote_ident(database);
    format!(
        "SELECT cs.object_id, cs.pobject_id, cs.rdn FROM {db}.dbo.mms_connectorspace cs \
         JOIN {db}.dbo.mms_management_agent ma ON cs.ma_id = ma.ma_id WHERE ma.ma_name = {} \
         AND cs.object_id IN (SELECT child.pobject_id FROM {db}.dbo.mms_connectorspace child)",
        quote_literal(management_agent)
    )
}
