//! The Gateway API processor: Gateways, HTTPRoutes, GRPCRoutes and TLSRoutes into the typed
//! Config, beside the Ingress one.

pub mod filters;
