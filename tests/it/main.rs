//! Integration tests: every test starts the real server on a free loopback port (in-process,
//! or the real binary for crash tests) and talks to it over HTTP.

mod achievements;
mod admin;
mod app_keys;
mod binary;
mod coalescing;
mod coverage;
mod crash;
mod durability;
mod environments;
mod errors;
mod events;
mod faults;
mod keys_cli;
mod leaderboards;
mod live_page;
mod notices;
mod points;
mod settings;
mod streaks;
mod support;
mod tenants;
mod test_clock;
mod users;
mod webhook_shapes;
mod webhooks;
mod websocket;
mod wrapped;
