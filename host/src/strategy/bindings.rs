//! The one `bindgen!` of the crate: host-side bindings of the `selection` world.
//! Nothing outside `strategy` sees these types.

#![allow(missing_docs, unsafe_code, clippy::all)]

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    world: "selection",
    // Borrowed arguments: a pick passes `&str` and `&[u32]`, so it allocates nothing.
    ownership: Borrowing { duplicate_if_necessary: true },
});
