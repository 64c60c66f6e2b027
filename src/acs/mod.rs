//! Alibaba Cloud request signatures, shared by every client that talks to an Alibaba Cloud API
//! (the CAMS client today, an STS client for temporary credentials) and by the simulated CAMS,
//! which verifies what the client signs. One implementation serves both sides so that the
//! official test vectors pin them at once.

pub mod v3;
