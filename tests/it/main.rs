//! Integration tests: one binary, one module per area.

mod cli;
mod compat;
mod dial_faults;
mod dial_real;
mod docs;
mod examples;
mod failover;
mod gateway;
mod hardening;
mod hostile;
mod hot_swap;
mod pool_shapes;
mod probes;
mod real_clients;
mod redaction;
mod redaction_props;
mod reload;
mod strategy;
mod strategy_api;
mod strategy_check;
mod strategy_faults;
mod verdict;
