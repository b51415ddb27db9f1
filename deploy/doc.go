// Package deploy holds no code: its tests check the deployment files beside it. The compose stack
// (compose.yaml, toxiproxy/proxies.json) and every kustomization under k8s/ are decoded strictly into
// their real types and held to the lab's invariants: loopback-only ports, probes, resources, a locked-down
// securityContext, images built by `make images`, one Toxiproxy proxy per link, and environment variable
// names that the programs really read. See docs/deploy.md.
package deploy
