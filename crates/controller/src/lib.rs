//! Reconciles MultiNicNodeConfig resources into agent Jobs and truthful status
