"""The read side of the inventory graph: clique types and dependency
directions (clique_types), traversals over the store's link primitives
(traversal), and what a tenant may see of them (visibility)."""
