//! The pages: server-rendered HTML, Vietnamese by default, English on request, no JavaScript.
//!
//! - [`layout`]: escaping, the page layout, the SVG charts.
//! - [`district`]: the dashboard (campaigns, progress, results, review, devices, admin pages).

pub mod district;
pub mod layout;
