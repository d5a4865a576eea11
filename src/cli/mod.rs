//! The command line: argument parsing, help, and dispatch to validation, schema and the engine.
