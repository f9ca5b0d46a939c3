//! The client's IP, resolved exactly as the resource-server layer resolves
//! it (`sesame_axum::client_ip`: the socket peer unless it is a trusted
//! proxy, then the rightmost hop that is not one, from `Forwarded` or
//! `X-Forwarded-For`). One implementation, so an `ip_ua`-bound token that
//! the server accepts is one every layer accepts.

pub use sesame_axum::client_ip::resolve;
