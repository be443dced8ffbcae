//! `vmauto demo`: the SCP simulator and the appliance together on loopback, with a local
//! store and seeded data.
