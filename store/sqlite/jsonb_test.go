package sqlite

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestJSONB checks the JSONB that Commit builds against SQLite's own reading
// of it: strictly valid, the same document as the equivalent JSON text, and
// every value coming back as it went in (headers of every size included).
func TestJSONB(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	texts := []string{"", "a", "12345678901", "123456789012", `q"uote\ ü	tab` + "\x00\x01\n",
		strings.Repeat("x", 255), strings.Repeat("y", 256), strings.Repeat("z", 65535), strings.Repeat("w", 65536)}
	ints := []int64{0, 1, -1, 1 << 40, -62135596800000, 9223372036854775807}

	b := jsonbOpen(nil)
	var want [][]any
	for _, s := range texts {
		row := len(b)
		b = jsonbOpen(b)
		b = appendJSONBText(b, s)
		b = append(b, jsonbNull)
		var r []any
		r = append(r, s, nil)
		for _, v := range ints {
			b = appendJSONBInt(b, v)
			r = append(r, v)
		}
		b = jsonbClose(b, row)
		want = append(want, r)
	}
	b = jsonbClose(b, 0)
	text, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var valid, same int
	if err := db.r.QueryRowContext(ctx, `SELECT json_valid(?1, 8), json(?1) = json(?2)`, b, string(text)).Scan(&valid, &same); err != nil {
		t.Fatal(err)
	}
	if valid != 1 || same != 1 {
		t.Fatalf("json_valid(jsonb, 8) = %d, same as JSON text = %d", valid, same)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT value->>0, value->>1 IS NULL, value->>2, value->>7 FROM jsonb_each(?)`, b)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var (
			s          string
			null       bool
			first, max int64
		)
		if err := rows.Scan(&s, &null, &first, &max); err != nil {
			t.Fatal(err)
		}
		if s != texts[i] || !null || first != ints[0] || max != ints[5] {
			t.Errorf("row %d: got %q %v %d %d", i, s, null, first, max)
		}
	}
	if err := rows.Err(); err != nil || i != len(texts) {
		t.Fatalf("%d rows, %v", i, err)
	}
	// Bytes that are not UTF-8 become U+FFFD, one per byte.
	var got string
	if err := db.r.QueryRowContext(ctx, `SELECT ? ->> 0`, jsonbClose(appendJSONBText(jsonbOpen(nil), "a\xff\xfeb"), 0)).Scan(&got); err != nil || got != "a\uFFFD\uFFFDb" {
		t.Fatalf("invalid UTF-8: got %q, %v", got, err)
	}
}
