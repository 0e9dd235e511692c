//! signalhub server
