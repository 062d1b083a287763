package kernels

// sgemmTileGo is the body of the plain-Go micro-kernels for an mr×nr tile,
// accumulating in acc (mr*nr zeros). Products are rounded before they are
// added (Go fuses them only where the platform's compiler does so).
func sgemmTileGo(acc []float32, mr, nr, k int, a []float32, rs, ks int, b, c []float32, ldc int, alpha, beta float32, bias []float32, rows, cols int) {
	for p := 0; p < k; p++ {
		bp := b[p*nr : p*nr+cols]
		for i := 0; i < rows; i++ {
			ai := a[i*rs+p*ks]
			row := acc[i*nr : i*nr+cols]
			for j, bj := range bp {
				row[j] += ai * bj
			}
		}
	}
	for i := 0; i < rows; i++ {
		row := acc[i*nr : i*nr+cols]
		out := c[i*ldc : i*ldc+cols]
		switch {
		case bias != nil:
			for j, s := range row {
				out[j] = float32(alpha*s) + bias[j]
			}
		case beta == 0:
			for j, s := range row {
				out[j] = alpha * s
			}
		default:
			for j, s := range row {
				out[j] = alpha*s + beta*out[j]
			}
		}
	}
}

// sgemm4x16Plain computes one rows×cols tile (rows ≤ 4, cols ≤ 16) of C from an
// A micro-panel of 4 rows, element (i, p) at a[i*rs+p*ks], and a packed
// B micro-panel, element (p, j) at b[p*16+j]. It is:
//
//	for i := 0; i < rows; i++ {
//		for j := 0; j < cols; j++ {
//			var s float32
//			for p := 0; p < k; p++ {
//				s += a[i*rs+p*ks] * b[p*16+j]
//			}
//			switch {
//			case bias != nil:
//				c[i*ldc+j] = float32(alpha*s) + bias[j]
//			case beta == 0:
//				c[i*ldc+j] = alpha * s
//			default:
//				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
//			}
//		}
//	}
//
// It is the kernel of the plain-Go variant: four rows of accumulators
// updated together, so that each B value is loaded once per k step. It
// needs k ≥ 1, 1 ≤ rows ≤ 4 and 1 ≤ cols ≤ 16; all 4 rows of the A panel
// and all 16 columns of the B panel are read, but only the rows×cols tile
// of C is touched, and C is not read when beta is 0 or bias is not nil.
func sgemm4x16Plain(k int, a []float32, rs, ks int, b, c []float32, ldc int, alpha, beta float32, bias []float32, rows, cols int) {
	var acc [4][16]float32
	_ = a[3*rs+(k-1)*ks]
	_ = b[k*16-1]
	for p := 0; p < k; p++ {
		bp := (*[16]float32)(b[p*16 : p*16+16])
		a0, a1, a2, a3 := a[p*ks], a[rs+p*ks], a[2*rs+p*ks], a[3*rs+p*ks]
		for j, x := range bp {
			acc[0][j] += a0 * x
			acc[1][j] += a1 * x
			acc[2][j] += a2 * x
			acc[3][j] += a3 * x
		}
	}
	for i := 0; i < rows; i++ {
		out := c[i*ldc : i*ldc+cols]
		switch {
		case bias != nil:
			for j := range out {
				out[j] = float32(alpha*acc[i][j]) + bias[j]
			}
		case beta == 0:
			for j := range out {
				out[j] = alpha * acc[i][j]
			}
		default:
			for j := range out {
				out[j] = alpha*acc[i][j] + beta*out[j]
			}
		}
	}
}
