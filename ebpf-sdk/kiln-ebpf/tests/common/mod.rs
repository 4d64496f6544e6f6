//! Helpers shared by the SDK's integration tests.

/// `127.0.0.1:port` as the `sockaddr_in` bind(2) and connect(2) take.
pub fn loopback_v4(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}
