package webui

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"

	qrcode "github.com/yeqown/go-qrcode/v2"
)

// QR codes (ISO/IEC 18004) of invite links. The library makes the matrix
// (version, Reed-Solomon blocks, the mask with the lowest penalty); the
// picture is drawn here, with the standard library's PNG encoder.
const (
	// qrScale is the pixels of a module: 8 keeps a version 6 code (41
	// modules, an invite to a long JID) under 400 pixels wide.
	qrScale = 8
	// qrQuiet is the light margin around the code, in modules: the 4 the
	// standard asks for.
	qrQuiet = 4
)

// matrixWriter keeps the matrix the library hands its writers.
type matrixWriter struct{ bits [][]bool }

func (m *matrixWriter) Write(mat qrcode.Matrix) error {
	m.bits = mat.Bitmap()
	return nil
}

func (m *matrixWriter) Close() error { return nil }

// qrPNG draws text as a QR code: byte mode (the text's bytes as they are,
// so that a scanner reads exactly the link) at error correction level M,
// dark on light, 1 bit a pixel.
func qrPNG(text string) ([]byte, error) {
	qrc, err := qrcode.NewWith(text, qrcode.WithEncodingMode(qrcode.EncModeByte), qrcode.WithErrorCorrectionLevel(qrcode.ErrorCorrectionMedium))
	if err != nil {
		return nil, fmt.Errorf("webui: QR code: %w", err)
	}
	var m matrixWriter
	if err := qrc.Save(&m); err != nil {
		return nil, fmt.Errorf("webui: QR code: %w", err)
	}
	n := len(m.bits)
	if n == 0 {
		return nil, fmt.Errorf("webui: QR code: empty matrix")
	}
	side := (n + 2*qrQuiet) * qrScale
	img := image.NewPaletted(image.Rect(0, 0, side, side), color.Palette{color.White, color.Black})
	for y, row := range m.bits {
		for x, dark := range row {
			if !dark {
				continue
			}
			x0, y0 := (x+qrQuiet)*qrScale, (y+qrQuiet)*qrScale
			for dy := range qrScale {
				off := img.PixOffset(x0, y0+dy)
				for dx := range qrScale {
					img.Pix[off+dx] = 1
				}
			}
		}
	}
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&b, img); err != nil {
		return nil, fmt.Errorf("webui: QR code: %w", err)
	}
	return b.Bytes(), nil
}
