"""Reading a cluster: sources (live API, snapshot, demo), the shapes checked at the edge, the typed model, the
indexed Inventory and the questions asked of it, Istio revisions and what each component is. The bottom room: it
imports no other room of meshstep."""
