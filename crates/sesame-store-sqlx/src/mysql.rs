//! MariaDB / MySQL store (work in progress).
