pub mod bolt;
pub mod check;
pub mod dump;
pub mod encoding;
pub mod schema;
pub mod validate;
