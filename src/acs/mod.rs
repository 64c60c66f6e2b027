//! Alibaba Cloud request signatures, shared by every client that talks to an Alibaba Cloud API
//! (the CAMS client with ACS3, the STS client with the RPC signature for AssumeRole) and by the
//! simulated services, which verify what the clients sign. One implementation serves both sides
//! so that the official test vectors pin them at once.

pub mod rpc;
pub mod v3;
