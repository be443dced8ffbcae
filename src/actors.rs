//! The supervised actor tree (design.md §2). One actor per file; shared messages in
//! [`messages`]; the tree is built in one place, [`tree::spawn_tree`]; restarts are
//! [`supervisor`]'s.

pub mod gateway;
pub mod lease;
pub mod messages;
pub mod notifier;
pub mod plugins;
pub mod reconciler;
pub mod registry;
pub mod scheduler;
pub mod subscription;
pub mod supervisor;
pub mod tree;
pub mod vps;
pub mod webhook;
