// Package ldaptest starts a real OpenLDAP server (slapd) on loopback for
// rostergate's tests, as package pgtest starts PostgreSQL: an LDAP
// directory (RFC 4511) with a small tree to look groups up in.
//
// The server is Debian's slapd (/usr/sbin/slapd, else slapd on PATH), with
// the schemas of /etc/ldap/schema, and the mdb backend and the memberof
// overlay from /usr/lib/ldap (the slapd package's): a user's entry shows
// the groups of names it is in as memberOf. Without it, Start skips the test, or fails it
// when the environment variable CI is "true".
//
// Each server belongs to one test: Start makes a temporary directory with
// a slapd.conf, the database and the server's log (slapd.log, whose tail
// failure messages include), starts slapd on 127.0.0.1 on a free port, and
// loads the tree; it is stopped and removed when the test ends. slapd runs
// as whoever runs the tests (root is fine for slapd), in the foreground,
// in a process group of its own, and is killed if the test binary dies.
//
// The tree under Base (dc=example,dc=com):
//
//	ou=people   the users: inetOrgPerson entries, uid=NAME, with a mail
//	ou=groups   the groups: groupOfNames entries, cn=NAME, member=DN…
//	ou=services cn=rostergate, the account rostergate binds as
//	            (BindDN, BindPassword)
//
// Anonymous clients may only bind; bound ones read everything (but
// passwords). AddUser, AddGroup, AddMember and RemoveMember change the
// tree as the admin (AdminDN).
//
// Stop, Start (again, on the same port and data), Kill, Pause and Resume
// take the directory away and bring it back in the ways a network
// directory goes away: shut down, crashed, hung.
//
// Every wait is bounded: a start by StartTimeout, a stop by stopTimeout,
// then SIGKILL.
package ldaptest
