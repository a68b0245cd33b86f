//! Integration tests of EM Agent live in `tests/`: they drive the `em-agent` binary over real HTTP.
