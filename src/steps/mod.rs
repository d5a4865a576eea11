//! Step kinds, one file each, all behind one trait (observe / diff / apply).
