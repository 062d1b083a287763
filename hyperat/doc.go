// Package hyperat will hold HyperAT itself: LoRA branches on the recognized
// linear layers, the hypernetwork that generates them per defense, the
// defenses (an attack plus a loss each), the sampling trainer and merging.
// The engine it builds on (import, graph, compile, nn) is complete; the
// method is not implemented yet.
package hyperat
