#!/usr/bin/perl
# scripts/check-links.pl FILE.md...: every relative link of these Markdown
# files names a file of the tree, and every #anchor a heading of its file
# (GitHub's rule: lower case, punctuation dropped, spaces to hyphens).
# Part of `make check-release`, so that no page of the manual points at a
# section that moved.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;

my %anchors;
sub anchors_of
{
	my ($file) = @_;
	return $anchors{$file} if $anchors{$file};
	my %a;
	open my $fh, '<', $file or return $anchors{$file} = {};
	my $fence = 0;
	while (<$fh>)
	{
		$fence = !$fence if /^```/;
		next if $fence;
		next unless /^#+ (.*?)\s*$/;
		(my $h = lc $1) =~ s/[^\w\- ]//g;
		$h =~ tr/ /-/;
		$a{$h} = 1;
	}
	return $anchors{$file} = \%a;
}

my $bad = 0;
my $links = 0;
for my $file (@ARGV)
{
	open my $fh, '<', $file or die "$file: $!";
	my $fence = 0;
	while (my $line = <$fh>)
	{
		$fence = !$fence if $line =~ /^```/;
		next if $fence;
		while ($line =~ /\]\(([^)\s]+)\)/g)
		{
			my $target = $1;
			next if $target =~ m{^[a-z]+:};
			$links++;
			my ($path, $anchor) = split /#/, $target, 2;
			my $dest = $path eq '' ? $file
			  : File::Spec->catfile(dirname($file), $path);
			if (!-e $dest)
			{
				print "check-links: $file:$.: $target: no such file\n";
				$bad++;
				next;
			}
			next unless defined $anchor && $dest =~ /\.md$/;
			next if anchors_of($dest)->{$anchor};
			print "check-links: $file:$.: $target: no such heading\n";
			$bad++;
		}
	}
}
print "check-links: $links links, $bad broken\n";
exit($bad ? 1 : 0);
