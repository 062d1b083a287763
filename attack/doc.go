// Package attack crafts L-infinity adversarial examples and measures robust
// accuracy: FGSM, PGD and CW (PGD on the margin loss), APGD-CE and APGD-T,
// FAB-T, Square, and the standard AutoAttack suite (Croce & Hein 2020), on
// any Model (logits and input gradients of a loss of the logits). PGD is
// also the training attack of the defenses in package hyperat (PGD.Perturb),
// and Correct counts the validation of a tuning run as Evaluate counts
// hyperat-eval's, so the two report one attack. The losses are package loss's.
//
// Images are pixels in [0, 1], [N, C, H, W]. Every attack returns one
// example per sample within eps of it (in the max norm) and in [0, 1], and
// says which examples the model misclassifies. Random choices come from a
// PCG stream per sample and attack, so a seed repeats a run bit for bit.
// README.md lists the settings and where they differ from AutoAttack's.
package attack
