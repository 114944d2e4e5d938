//! What a sans-IO parser says about the bytes read so far.

/// The outcome of parsing the bytes a client has sent so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole message, and how many bytes it took.
    Complete(T, usize),
    /// Not enough bytes yet: read more.
    Partial,
    /// Not this protocol, or broken: the reason, for the reply and the log.
    Invalid(&'static str),
}

impl<T> Parse<T> {
    /// Maps the message of a complete parse.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parse<U> {
        match self {
            Parse::Complete(t, n) => Parse::Complete(f(t), n),
            Parse::Partial => Parse::Partial,
            Parse::Invalid(why) => Parse::Invalid(why),
        }
    }
}

/// Where a client asks to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// An address the client resolved itself.
    Ip(std::net::SocketAddr),
    /// A name for the proxy to resolve, and the port.
    Name(String, u16),
}
