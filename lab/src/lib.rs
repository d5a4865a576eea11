//! upgrade-lab: a simulated MIIS server for testing and rehearsing `upgrade` plans.
//! TEST DOUBLE: nothing here is shipped in the `upgrade` binary.
