package httpapi

import "testing"

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://bot.example/hook":                  "https://bot.example/hook",
		"https://user:s3cret@bot.example/hook":      "https://user@bot.example/hook",
		"https://bot.example/hook?token=s3cret&x=1": "https://bot.example/hook?…",
		"https://u:p@bot.example:8443/h?k=v#frag":   "https://u@bot.example:8443/h?…#frag",
		"://bad": "(a URL that does not parse)",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
