//! Sesame's Redis session store (work in progress).
#![deny(missing_docs)]
