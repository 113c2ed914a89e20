//! Coordinators: the broker-side halves of protocols that clients drive. Today the group
//! coordinator ([`group`]); the transaction coordinator (`__transaction_state`) will sit
//! beside it.

pub mod group;
