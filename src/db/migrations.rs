//! The schema's migrations, one SurrealQL file each in `migrations/`.

/// Ordered migrations: `(version, name, SurrealQL)`. Append only; never edit a shipped one.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "initial schema", include_str!("migrations/0001_init.surql")),
    (2, "notification deliveries and reveal links", include_str!("migrations/0002_notify.surql")),
    (3, "admin UI lookups", include_str!("migrations/0003_admin_ui.surql")),
    (4, "upgrade payments and links", include_str!("migrations/0004_upgrades.surql")),
    (5, "VPS search index", include_str!("migrations/0005_vps_search.surql")),
    (6, "one spelling of activity levels", include_str!("migrations/0006_activity_levels.surql")),
    (7, "customer portal links and deletion reminders", include_str!("migrations/0007_portal.surql")),
    (8, "paid restores of a suspended VPS", include_str!("migrations/0008_restore.surql")),
    (9, "placement: when a VPS's VM was asked for", include_str!("migrations/0009_placement.surql")),
    (10, "the work lease of nodes sharing a store", include_str!("migrations/0010_lease.surql")),
    (11, "the SCP budget nodes share", include_str!("migrations/0011_scp_budget.surql")),
    (12, "the inbox backlog in arrival order", include_str!("migrations/0012_inbox_backlog.surql")),
    (13, "VPS search index apart from the VPS rows", include_str!("migrations/0013_vps_search_apart.surql")),
    (14, "a mark of the catalogue's last change", include_str!("migrations/0014_catalogue_version.surql")),
    (15, "operations by creation and finish time", include_str!("migrations/0015_operation_times.surql")),
    (16, "the activity log by level and time", include_str!("migrations/0016_activity_level_time.surql")),
    (
        17,
        "one index fewer on the inbox and the activity log",
        include_str!("migrations/0017_fewer_inbox_indexes.surql"),
    ),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;
