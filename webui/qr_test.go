package webui

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/makiuchi-d/gozxing/qrcode/decoder"
)

// decodeQR reads a QR code's PNG as a scanner does (ZXing's detector on
// the whole picture), and returns its text.
func decodeQR(t *testing.T, pngBytes []byte) string {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(pngBytes))
	if err != nil {
		t.Fatalf("the QR code is no PNG: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		t.Fatalf("the QR code does not decode: %v", err)
	}
	return res.GetText()
}

// The QR code of an invite's link reads back as exactly the link, in the
// shape the standard asks for: a version's size of modules, qrScale pixels
// each, a light quiet zone of 4 modules, not mirrored, at level M.
func TestQRPNG(t *testing.T) {
	for _, tc := range []struct {
		name    string
		text    string
		version int // the smallest that holds the text in byte mode at level M
	}{
		{"short", "xmpp:a@b.c?roster;preauth=x", 3}, // 27 bytes: version 2 holds 26
		{"an invite", "xmpp:helpdesk@bots.example.com?roster;preauth=rgi_" + strings.Repeat("Ab-_9", 8) + "xyz", 6},
		{"a long JID", "xmpp:" + strings.Repeat("l", 200) + "@" + strings.Repeat("d", 200) + ".example?roster;preauth=rgi_" + strings.Repeat("Z", 43), 17}, // 477 bytes: version 16 holds 450
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := qrPNG(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeQR(t, b); got != tc.text {
				t.Fatalf("decoded %q, want %q", got, tc.text)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			modules := 17 + 4*tc.version
			side := (modules + 2*qrQuiet) * qrScale
			if r := img.Bounds(); r.Dx() != side || r.Dy() != side {
				t.Fatalf("%v, want %dx%d (version %d)", r, side, side, tc.version)
			}
			// The modules, read at their centres; the quiet zone light.
			dark := func(x, y int) bool {
				r, _, _, _ := img.At(x, y).RGBA()
				return r < 0x8000
			}
			grid := make([][]bool, modules)
			for my := -qrQuiet; my < modules+qrQuiet; my++ {
				for mx := -qrQuiet; mx < modules+qrQuiet; mx++ {
					d := dark((mx+qrQuiet)*qrScale+qrScale/2, (my+qrQuiet)*qrScale+qrScale/2)
					if mx < 0 || my < 0 || mx >= modules || my >= modules {
						if d {
							t.Fatalf("the quiet zone is dark at module (%d,%d)", mx, my)
						}
						continue
					}
					if grid[my] == nil {
						grid[my] = make([]bool, modules)
					}
					grid[my][mx] = d
				}
			}
			// The finder patterns: a dark ring, a light ring, a dark centre,
			// a light separator.
			if !grid[0][0] || !grid[0][modules-1] || !grid[modules-1][0] || grid[1][1] || !grid[3][3] || grid[7][7] {
				t.Errorf("the finder patterns are not where they belong")
			}
			res, err := decoder.NewDecoder().DecodeBoolMap(grid, nil)
			if err != nil {
				t.Fatalf("the module grid does not decode: %v", err)
			}
			if res.GetText() != tc.text {
				t.Errorf("the grid decoded %q", res.GetText())
			}
			if md, ok := res.GetOther().(*decoder.QRCodeDecoderMetaData); ok && md.IsMirrored() {
				t.Error("the code is mirrored (its matrix transposed)")
			}
			if res.GetECLevel() != "M" {
				t.Errorf("error correction level %q, want M", res.GetECLevel())
			}
			// The decoder sees the code as it is only if nothing is
			// transposed: reading the transposed grid must need the
			// mirror.
			tr := make([][]bool, modules)
			for y := range tr {
				tr[y] = make([]bool, modules)
				for x := range tr[y] {
					tr[y][x] = grid[x][y]
				}
			}
			res, err = decoder.NewDecoder().DecodeBoolMap(tr, nil)
			if err != nil {
				t.Fatalf("the transposed grid: %v", err)
			}
			if md, ok := res.GetOther().(*decoder.QRCodeDecoderMetaData); !ok || !md.IsMirrored() {
				t.Error("the transposed grid decodes unmirrored: the check above proves nothing")
			}
		})
	}
}
