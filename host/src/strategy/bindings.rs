//! The one `bindgen!` of the crate: host-side bindings of both plug-in worlds
//! (`selection` and `health-verdict`). A host-only world exports both interfaces, so
//! one set of bindings serves both; a component is checked against the interface it
//! must export, not against this world. Nothing outside `strategy` sees these types.

#![allow(missing_docs, unsafe_code, clippy::all)]

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    inline: "
        package proxypool:host-view;
        world plugins {
            import proxypool:strategy/host@0.1.0;
            export proxypool:strategy/selector@0.1.0;
            export proxypool:strategy/verdict@0.1.0;
        }
    ",
    world: "proxypool:host-view/plugins",
    // Borrowed arguments: a pick passes `&str` and `&[u32]`, so it allocates nothing.
    ownership: Borrowing { duplicate_if_necessary: true },
});
